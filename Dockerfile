# syntax=docker/dockerfile:1
# streamhub in a container: a static Go binary (CGO_ENABLED=0) run as a
# non-root user, with FFmpeg for the bitrate ladder and WebRTC audio.
#   docker build -t streamhub .
#   docker run --rm -p 1935:1935 -p 8080:8080 -p 8554:8554 -p 8890:8890/udp \
#     -p 8189:8189/udp -p 8189:8189 -v streamhub-data:/var/lib/streamhub streamhub
# See docs/operations.md (ports, config, reload, health checks) and
# deploy/docker/docker-compose.yml.

# 1. The web pages' player libraries (hls.js, mpegts.js), which the binary
#    embeds: web/vendor.sh does the same outside Docker.
FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json web/vendor.mjs ./
RUN npm ci --no-audit --no-fund --loglevel=error

# 2. The binary. The build line is the one TestDockerfile (e2e/deploy_test.go)
#    runs outside Docker and checks for a static binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
COPY --from=web /src/web/static/vendor/ web/static/vendor/
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/streamhub .

# 3. The runtime: FFmpeg (the ladder and the AAC/Opus audio jobs; without
#    it streamhub runs with the ladder off) and an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/streamhub --create-home --shell /usr/sbin/nologin streamhub
COPY --from=build /out/streamhub /usr/local/bin/streamhub
# The embedded defaults as a file to edit or mount over; mount a directory
# (not the single file) so that a save is seen by the hot reload.
COPY config.yml /etc/streamhub/streamhub.yml
USER 10001:10001
# streams.database (streamhub.db) is relative: it lives here.
WORKDIR /var/lib/streamhub
VOLUME ["/var/lib/streamhub"]
# rtmp.address, rtsp.address, rtsp.udpRTPAddress and rtsp.udpRTCPAddress,
# srt.address (UDP), http.address (HTTP-FLV, LL-HLS, WHIP/WHEP, the API,
# /metrics, /healthz, /readyz, the web pages), webrtc.udpAddress and
# webrtc.tcpAddress.
EXPOSE 1935/tcp 8554/tcp 8000/udp 8001/udp 8890/udp 8080/tcp 8189/udp 8189/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/streamhub"]
CMD ["--config", "/etc/streamhub/streamhub.yml"]
