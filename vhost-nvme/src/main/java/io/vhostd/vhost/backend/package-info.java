/**
 * The vhost-user <em>back-end</em> of one front-end connection, as the slave process runs it: {@link
 * io.vhostd.vhost.backend.VhostUserBackend} reads each message from the socket, checks it against the connection's
 * state, runs the handler named after it, and answers as vhost-user.rst says. The device model and the data path sit
 * behind {@link io.vhostd.vhost.backend.VhostUserDevice}.
 *
 * <p>Everything the front-end sends is untrusted: payloads are decoded by {@code io.vhostd.vhost.proto} records that
 * check their syntax, this package checks the state (owner, negotiated features, queue index, ring size), and every
 * error is answered with the protocol's own failure reply while the connection keeps serving. File descriptors that a
 * message does not take are closed.
 */
package io.vhostd.vhost.backend;
