"""A gRPC test backend for Fulcrum's integration tests (tests/it/grpc.rs).

Generic handlers with bytes in and out (no generated code): test.Echo/Unary, ServerStream,
ClientStream, Bidi, Slow, SetHealth; and the standard grpc.health.v1 service. Prints its port
on stdout once serving. Usage: server.py NAME
"""

import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

NAME = sys.argv[1] if len(sys.argv) > 1 else "backend"


def ident(b):
    return b


def unary(req, ctx):
    ctx.set_trailing_metadata((("x-trailer", "kept"),))
    if req == b"fail":
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b"echo:" + req + b" from " + NAME.encode()


def slow(req, ctx):
    time.sleep(float(req.decode()))
    return b"late"


def server_stream(req, ctx):
    for i in range(int(req.decode())):
        yield ("msg %d" % i).encode()
        time.sleep(0.2)


def client_stream(requests, ctx):
    return b"+".join(requests)


def bidi(requests, ctx):
    for m in requests:
        yield b"re:" + m


HEALTH = health.HealthServicer()


def set_health(req, ctx):
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if req == b"up"
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    HEALTH.set("", status)
    HEALTH.set("test.Echo", status)
    return b"ok"


def main():
    kw = dict(request_deserializer=ident, response_serializer=ident)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, **kw),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, **kw),
        "SetHealth": grpc.unary_unary_rpc_method_handler(set_health, **kw),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **kw),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **kw),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, **kw),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", handlers),)
    )
    HEALTH.set("", health_pb2.HealthCheckResponse.SERVING)
    HEALTH.set("test.Echo", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(HEALTH, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
