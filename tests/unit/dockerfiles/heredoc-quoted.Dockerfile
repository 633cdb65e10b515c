FROM alpine
RUN <<"EOF"
echo $HOME
EOF
RUN <<'EOF'
echo $PATH
EOF
RUN <<E"O"F
x
EOF
