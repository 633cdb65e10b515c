# a comment
# escape=`
FROM alpine
RUN echo a `
