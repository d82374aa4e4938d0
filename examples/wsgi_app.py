"""A WSGI app, served through a maintained WSGI->ASGI adapter (a2wsgi).

    sockserve --workers 2 examples.wsgi_app:application
"""


def application(environ, start_response):
    body = f"hello from WSGI, you asked for {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
