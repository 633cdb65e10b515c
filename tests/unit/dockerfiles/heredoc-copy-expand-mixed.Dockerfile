FROM alpine
COPY <<EOF <<'RAW' /out/
$HOME
EOF
$HOME
RAW
