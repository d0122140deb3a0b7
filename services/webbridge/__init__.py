"""The grpc-web bridge: browsers call the gateway and the edge over HTTP/1.1 through it."""
