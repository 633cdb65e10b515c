FROM golang
RUN --mount=type=cache,target=/root/.cache/go-build go build ./...
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked,id=apt \
    --mount=type=cache,target=/var/lib/apt,sharing=private \
    apt-get update && apt-get install -y gcc
RUN --mount=type=secret,id=aws,target=/root/.aws/credentials,required=true aws s3 cp s3://b/f .
RUN --mount=type=secret,id=token,env=TOKEN,mode=0400,uid=1000,gid=1000 ./use-token
RUN --mount=type=bind,from=builder,source=/out,target=/in,readonly ls /in
RUN --mount=type=bind,src=.,dst=/ctx,rw true
RUN --mount=type=tmpfs,target=/tmp,size=64m ls /tmp
RUN --mount=type=ssh,id=default,required git clone git@github.com:me/repo.git
RUN --mount=target=/ctx ls /ctx
