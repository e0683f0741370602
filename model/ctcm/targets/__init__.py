"""Data-plane targets: what to program from the config (program), bmv2 over Thrift and its process (bmv2), the offline replay of vectors on bmv2 in pcap-file mode (replay), ``ctcm replay`` (cli)."""
