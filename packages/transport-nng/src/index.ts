/**
 * @effect-ipc/transport-nng: planned (see the issue tracker); it has no exports yet.
 *
 * @since 0.1.0
 */
export const planned = true
