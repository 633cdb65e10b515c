FROM alpine
COPY <<EOF /etc/motd
hello $USER
EOF
COPY --chmod=755 <<-"SCRIPT" /usr/local/bin/run
	#!/bin/sh
	exec "$@"
	SCRIPT
