FROM alpine
RUN <<EOF
# not a comment here

blank above
EOF
