# The schat server image. It holds nothing but the statically linked
# binary, so it builds without pulling a base image:
#
#	CGO_ENABLED=0 go build -o schat ./cli && docker build -t schat .
#
# With no arguments a container runs a one-node cluster on /data. For a
# cluster, give `serve` with --node-id, --raft-advertise (an address the
# other nodes can dial, such as the container's name), --join,
# --bootstrap-expect and --cluster-secret; examples/three-node shows how.
FROM scratch

COPY schat /schat

# 7420: client protocol (TCP), 7421: node to node (raft and forwarding),
# 7480: HTTP (WebSocket at /ws, /healthz, /readyz, /metrics).
EXPOSE 7420 7421 7480
VOLUME /data

ENTRYPOINT ["/schat"]
CMD ["serve", "--data-dir", "/data", "--client-addr", "0.0.0.0:7420", \
	"--http-addr", "0.0.0.0:7480", "--raft-addr", "0.0.0.0:7421"]
