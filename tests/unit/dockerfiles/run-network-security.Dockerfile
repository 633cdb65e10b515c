FROM alpine
RUN --network=none pip install --find-links wheels mypkg
RUN --network=host curl -s http://localhost
RUN --network=default echo ok
RUN --security=insecure cat /proc/self/status
RUN --security=sandbox true
