/** The Asterisk side: the REST clients that execute commands (HTTP, or over the websocket) and the event websocket. */
export * from "./rest.js"
export * from "./socket.js"
export * from "./websocketRest.js"
export * from "./eventFilter.js"
