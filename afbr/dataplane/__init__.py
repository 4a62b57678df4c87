"""Kernel dataplane: reconcile of links, routes, nftables and XFRM against the kernel."""
