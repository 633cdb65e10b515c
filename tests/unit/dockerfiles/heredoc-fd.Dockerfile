FROM alpine
RUN 3<<EOF cat /proc/self/fd/3
three
EOF
