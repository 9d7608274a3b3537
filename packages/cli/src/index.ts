/**
 * effect-ipc: the command line, the demo service and the transports it ships with.
 *
 * @since 0.1.0
 */

/** The demo RPC service. */
export * from "./DemoApi.ts"
