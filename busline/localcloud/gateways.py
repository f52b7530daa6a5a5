"""The local cloud's HTTP front doors: REST API (and HTTP APIs, on its port), WebSocket API (+ @connections),
and the web page."""

from busline.localcloud.gateway_http import HttpApiGateway, http_api_urls
from busline.localcloud.gateway_rest import RestGateway
from busline.localcloud.gateway_ws import WebSocketGateway, websocket_api_urls
from busline.localcloud.static_site import StaticSite

__all__ = ["HttpApiGateway", "RestGateway", "StaticSite", "WebSocketGateway", "http_api_urls", "websocket_api_urls"]
