"""BGP signalling: the Tunnel Encapsulation attribute, the ExaBGP bridge, the softwire RIB."""
