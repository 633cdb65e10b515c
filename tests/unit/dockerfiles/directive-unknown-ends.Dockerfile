# foo=bar
# escape=`
FROM alpine
RUN x `
