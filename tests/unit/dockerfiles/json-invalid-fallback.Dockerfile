FROM alpine
RUN ["echo", hi]
CMD [echo, "x"]
ENTRYPOINT ['single', 'quotes']
CMD ["unterminated"
CMD [NaN]
RUN ["ok"] trailing text
COPY ["a", b] /c
VOLUME [/data]
