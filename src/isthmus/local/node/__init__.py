"""The node process of a local cluster: what kubelet, kube-proxy and cluster DNS do on a real node.

It runs the pods bound to its node in network namespaces on the run's fabric, routes Service ClusterIPs with
iptables in the fabric, answers cluster DNS, and serves logs, exec and port-forward to the API server. It runs
apart from the API server, so stopping the API server leaves pods running and serving.
"""
