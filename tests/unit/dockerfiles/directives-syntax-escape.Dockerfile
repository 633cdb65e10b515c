# syntax=docker/dockerfile:1.7
# escape=`
FROM alpine
RUN echo `
  hi
