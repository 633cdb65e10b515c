FROM alpine
RUN <<EOF
EOF
RUN echo after
