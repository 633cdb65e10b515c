# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended;error=true
FROM alpine
CMD echo hi
