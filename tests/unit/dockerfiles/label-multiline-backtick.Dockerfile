# escape=`
FROM alpine
LABEL a="one `
two" b=c
ENV P=C:\x\y
