/**
 * The master process (DESIGN §1): owns the bdevs, the shared-memory arena and the device engines, keeps a copy of
 * every fd a slave holds (fd custody), spawns and watches the slave, and serves the JSON-RPC control socket. It does no
 * protocol parsing and runs no guest logic.
 *
 * <p>Role: master.
 */
package io.vhostd.master;
