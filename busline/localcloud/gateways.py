"""The local cloud's HTTP front doors: REST API, WebSocket API (+ @connections), and the web page."""

from busline.localcloud.gateway_rest import RestGateway
from busline.localcloud.gateway_ws import WebSocketGateway
from busline.localcloud.static_site import StaticSite

__all__ = ["RestGateway", "StaticSite", "WebSocketGateway"]
