/**
 * The longest delay a Node (or browser) timer takes: 2^31 - 1 ms, about 24.8
 * days. A longer one, `Infinity` included, fires after 1 ms.
 *
 * @internal
 */
export const MAX_TIMER_MILLIS = 2 ** 31 - 1
