/** The Asterisk side: the REST client that executes commands and the event websocket. */
export * from "./rest.js"
export * from "./socket.js"
