# leading comment
FROM alpine
RUN echo hi # not a comment
# between
    # indented
RUN echo '# not a comment' # trailing
#
#last
