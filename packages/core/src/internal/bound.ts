/**
 * What `IpcRpc`'s servers keep of the connections whose calls they bound, in
 * this process: a connection's count of calls in flight and its waiting
 * requests are kept from its first message until its disconnection is seen,
 * or its server stops (a test's view of what a client gone leaves behind).
 */

/** How many served connections' calls are kept, all servers of this process together. */
export const kept = { connections: 0 }
