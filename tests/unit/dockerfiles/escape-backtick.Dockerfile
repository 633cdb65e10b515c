# escape=`

FROM mcr.microsoft.com/windows/servercore
COPY testfile.txt c:\
RUN dir c:\
RUN echo a `
    b `
    c
ENV PATH=C:\bin;`
C:\tools
