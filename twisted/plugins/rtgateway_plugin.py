from twisted.application.service import ServiceMaker

rtgateway = ServiceMaker(
    "rtgateway",
    "rtgateway.tap",
    "A real-time WebSocket gateway for multiplayer games",
    "rtgateway",
)
