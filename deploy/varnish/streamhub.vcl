# Varnish (Debian's varnish 7.1) in front of streamhub's HTTP port: LL-HLS
# cached, everything else passed through. docs/caching.md explains each
# rule; copy this file, set the backend's address, and run for instance
#
#   varnishd -a :80 -f /etc/varnish/streamhub.vcl -s malloc,512m
#
# What it does:
# - one cache object per full URL (the query names the part a blocking
#   playlist reload waits for, and carries the path's share value), the
#   query's parameters sorted so that players that order them differently
#   share the object;
# - request coalescing: N viewers asking for the same blocking playlist or
#   the same preload-hinted part while the origin holds the first request
#   wait on that one request (Varnish's waiting list) and are all answered
#   when it returns, so the origin sees one request per part and playlist
#   version;
# - responses streamed to the client as they arrive (do_stream);
# - the origin's Cache-Control followed, but no grace (an error or a
#   playlist is never served older than the origin allows), the plain
#   media playlist kept 100 ms (half of hls.partTarget) so that a join
#   storm coalesces, parts kept a minute (nobody asks for an older one);
# - HTTP-FLV, the chat's WebSocket, the API, /metrics, WHIP/WHEP and the
#   web pages passed through, never stored;
# - X-Cache: HIT or MISS (and X-Cache-Hits) on every HLS answer; Age as
#   Varnish computes it (hls.js reads it).
vcl 4.1;

import std;

backend streamhub {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    # Longer than hls.blockTimeout (5 s): the origin holds a blocking
    # playlist reload or a preload-hinted part until it exists.
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 10s;
}

sub vcl_recv {
    # The chat (WebSocket) and HTTP-FLV (an endless response): a plain
    # TCP relay for the rest of the connection.
    if (req.http.Upgrade ~ "(?i)websocket" || req.url ~ "^[^?]*\.flv(\?|$)") {
        return (pipe);
    }
    # Only LL-HLS GETs are cached: the API, /metrics, the pages, WHIP and
    # WHEP go to streamhub as they are.
    if ((req.method != "GET" && req.method != "HEAD") || req.url !~ "^[^?]*\.(m3u8|mp4)(\?|$)") {
        return (pass);
    }
    set req.url = std.querysort(req.url);
    # Nothing per viewer may reach a shared object: the answer depends on
    # the URL alone.
    unset req.http.Cookie;
    unset req.http.Authorization;
    return (hash);
}

sub vcl_pipe {
    if (req.http.Upgrade) {
        set bereq.http.Upgrade = req.http.Upgrade;
        set bereq.http.Connection = req.http.Connection;
    }
}

# vcl_hash is Varnish's own: the full URL (path and query) and the Host.

sub vcl_backend_response {
    if (bereq.url !~ "^[^?]*\.(m3u8|mp4)(\?|$)") {
        return (deliver);
    }
    set beresp.do_stream = true;
    set beresp.grace = 0s;
    set beresp.keep = 0s;
    if (beresp.status == 200 && bereq.url ~ "^[^?]*/stream\.m3u8" && bereq.url !~ "[?&]_HLS_msn=") {
        # The plain media playlist (origin: no-cache): shorter than a
        # part. Set in VCL because Cache-Control counts whole seconds.
        set beresp.ttl = 100ms;
        return (deliver);
    }
    if (beresp.status == 200 && bereq.url ~ "part[0-9]+\.[0-9]+\.mp4" && beresp.ttl > 1m) {
        set beresp.ttl = 1m;
    }
    # Otherwise the origin's Cache-Control decides; a no-store refusal
    # falls to Varnish's built-in rules (not stored).
}

sub vcl_deliver {
    if (req.url ~ "^[^?]*\.(m3u8|mp4)(\?|$)") {
        if (obj.hits > 0) {
            set resp.http.X-Cache = "HIT";
        } else {
            set resp.http.X-Cache = "MISS";
        }
        set resp.http.X-Cache-Hits = obj.hits;
    }
}
