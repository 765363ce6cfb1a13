/**
 * The vhost-user protocol as data: message ids and names, protocol feature bits, the message header, and one record
 * per payload, named after the specification's C structs. No I/O, no native calls: the back-end's dispatcher
 * ({@code io.vhostd.vhost.backend}) reads and writes the socket.
 *
 * <p>Role: this package describes both sides, but the slave process only plays the vhost-user <em>back-end</em>
 * (QEMU is the front-end). "Slave" names our process, never a protocol role: the protocol's current names are used
 * ({@code VHOST_USER_SET_BACKEND_REQ_FD}, not {@code ..._SLAVE_REQ_FD}).
 *
 * <p>Every payload decoder checks its own syntax (exact size, counts, reserved bits, address overflow) and throws
 * {@link io.vhostd.vhost.proto.VhostUserProtocolException} naming the request; sizes from the wire are never trusted.
 * Feature- and state-dependent rules (is the message legal now, is the queue index in range) are the dispatcher's.
 * All numbers are in the machine's native byte order, as the specification says.
 *
 * <p>Normative reference: QEMU {@code docs/interop/vhost-user.rst} ("Message Specification", "Front-end message
 * types", "Back-end message types"); behaviour details follow libvhost-user, payload names follow rust-vmm's
 * {@code vhost_user/message.rs}.
 */
package io.vhostd.vhost.proto;
