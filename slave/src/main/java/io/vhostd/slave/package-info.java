/**
 * The slave process (DESIGN §1): accepts vhost-user connections on the sockets the master hands it, runs the
 * vhost-user back-end and the virtio-blk device, and turns guest requests into VirtNvme commands to the master's
 * device engine. It holds all the protocol logic and is the process that may crash or be upgraded.
 *
 * <p>Role: slave. ("slave" is only our process role; protocol code uses the vhost-user spec's front-end/back-end.)
 */
package io.vhostd.slave;
