FROM alpine
CMD ["echo", "json"]
CMD echo shell
ENTRYPOINT ["a", "b c"]
ENTRYPOINT exec top -b
RUN ["sh", "-c", "echo $HOME"]
RUN [ "spaced" , "json" ]
CMD []
CMD [ ]
CMD ["trailing"]   
