/**
 * TLS for `nng+tls+tcp://` and `nng+wss://` (and nng's own `tls+tcp://` and
 * `wss://` in the messaging patterns): this endpoint's certificate and key,
 * the CA its peers are verified against, and how strictly.
 *
 * A listener needs a certificate (`certFile`). It verifies clients'
 * certificates against `caFile` when one is given (`authMode` "required" by
 * default then: mutual authentication), and asks for none otherwise. A dialer
 * always verifies the server's certificate against `caFile`, the name it
 * dialled (or `serverName`) included, unless `authMode` is "none"; with a
 * `certFile` of its own it presents it to servers that ask. Files are PEM,
 * read when a socket listens or dials; a key file may hold the certificate
 * too (then `keyFile` may be left out). Keys must not be encrypted.
 *
 * A handshake that fails (an unknown or wrong certificate on either side) is
 * `PeerRejected` for the dialer (nng's `NNG_EPEERAUTH` or `NNG_ECRYPTO` in
 * `errno`); the listener drops that connection and serves the others.
 *
 * With `authMode` "optional" a listener admits clients without a certificate:
 * nng then completes every handshake, whatever the check of a client's
 * certificate found, and the socket checks each connection itself before
 * anything it sent is used. A client whose certificate does not verify has its
 * connection closed, what it sent dropped, and is counted and logged as a
 * refused connection; a certificate without a common name cannot be told from
 * none. A libnng that cannot tell whether a client presented a certificate
 * (Debian's 1.5.2) admits only verified clients. A socket that only sends
 * (a publisher, a pusher) cannot check its clients: listening over TLS with
 * "optional" is `InvalidOption` there.
 *
 * @since 0.1.0
 */

/**
 * How a peer's certificate is checked: not at all, when one is presented, or
 * always. A dialer always gets a certificate from the server, so "optional"
 * checks it always there, as "required" does.
 */
export type AuthMode = "none" | "optional" | "required"

/** TLS options of an nng endpoint. */
export interface TlsOptions {
  /** This side's certificate (chain), PEM; the key too when `keyFile` is left out. Required to listen. */
  readonly certFile?: string | undefined
  /** The private key of `certFile`, PEM, unencrypted (default: read from `certFile`). */
  readonly keyFile?: string | undefined
  /** The CA certificate(s), PEM, that the peer's certificate must be signed by. */
  readonly caFile?: string | undefined
  /**
   * How the peer's certificate is checked (default: "required" for dialers,
   * and for listeners given a `caFile`; "none" for listeners without one).
   * "optional": a listener serves clients without a certificate and refuses
   * those presenting one that does not verify against `caFile`; on a dialer it
   * is "required". "none" on a dialer accepts any server: encrypted, but not
   * authenticated.
   */
  readonly authMode?: AuthMode | undefined
  /** The name the server's certificate must carry (default: the host dialled). Dialers only. */
  readonly serverName?: string | undefined
}
