FROM python:3
RUN python3 <<EOF
print('hello')
EOF
RUN <<EOF bash -e
set -x
EOF
