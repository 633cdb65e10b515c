FROM golang:1.22 AS builder
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app

FROM builder AS test
RUN go test ./...

FROM gcr.io/distroless/static AS final
COPY --from=builder /out/app /app
ENTRYPOINT ["/app"]
