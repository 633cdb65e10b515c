FROM alpine
ENV A=<<EOF
LABEL b=<<EOF
RUN echo done
