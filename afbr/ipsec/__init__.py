"""IKEv2 agent: a sans-IO IKEv2 core and its UDP adapter."""
