"""A gRPC test client for Fulcrum's integration tests (tests/it/grpc.rs): runs the named
scenarios against TARGET (host:port, h2c) and prints one JSON object per scenario.

Usage: client.py TARGET SCENARIO...   (env GRPC_TLS_CA + GRPC_TLS_NAME: over TLS)
"""

import json
import os
import sys
import time

import grpc


def ident(b):
    return b


def error(e):
    return {
        "code": e.code().name,
        "details": e.details(),
        "trailers": dict(e.trailing_metadata() or ()),
    }


def main():
    target = sys.argv[1]
    # GRPC_TLS_CA (a PEM file) and GRPC_TLS_NAME: TLS (ALPN h2) to an HTTPS listener.
    ca = os.environ.get("GRPC_TLS_CA")
    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(f.read())
        name = os.environ["GRPC_TLS_NAME"]
        channel = grpc.secure_channel(
            target, creds, options=[("grpc.ssl_target_name_override", name)]
        )
    else:
        channel = grpc.insecure_channel(target)
    kw = dict(request_serializer=ident, response_deserializer=ident)
    unary = channel.unary_unary("/test.Echo/Unary", **kw)
    slow = channel.unary_unary("/test.Echo/Slow", **kw)
    set_health = channel.unary_unary("/test.Echo/SetHealth", **kw)
    server_stream = channel.unary_stream("/test.Echo/ServerStream", **kw)
    client_stream = channel.stream_unary("/test.Echo/ClientStream", **kw)
    bidi = channel.stream_stream("/test.Echo/Bidi", **kw)
    for scenario in sys.argv[2:]:
        out = {"scenario": scenario}
        try:
            if scenario == "unary":
                reply, call = unary.with_call(b"hi", timeout=10)
                out["reply"] = reply.decode()
                out["trailers"] = dict(call.trailing_metadata() or ())
            elif scenario == "fail":
                unary(b"fail", timeout=10)
            elif scenario == "server_stream":
                start = time.monotonic()
                out["messages"], out["times"] = [], []
                for m in server_stream(b"5", timeout=10):
                    out["messages"].append(m.decode())
                    out["times"].append(time.monotonic() - start)
            elif scenario == "client_stream":
                out["reply"] = client_stream(iter([b"a", b"b", b"c"]), timeout=10).decode()
            elif scenario == "bidi":
                out["messages"] = [
                    m.decode() for m in bidi(iter([b"1", b"2", b"3"]), timeout=10)
                ]
            elif scenario == "deadline":
                slow(b"3", timeout=0.5)
            elif scenario == "slow":
                slow(b"3", timeout=20)
            elif scenario in ("health_up", "health_down"):
                out["reply"] = set_health(b"up" if scenario == "health_up" else b"down", timeout=10).decode()
            else:
                out["unknown"] = True
            out["code"] = out.get("code", "OK")
        except grpc.RpcError as e:
            out.update(error(e))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
