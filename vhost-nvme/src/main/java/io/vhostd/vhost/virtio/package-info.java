/**
 * Virtio device side (the vhost-user <em>back-end</em> role, run by the slave process): guest memory, split and
 * packed virtqueues behind one {@link io.vhostd.vhost.virtio.Virtqueue} interface, and virtio-blk request parsing
 * (discard / write-zeroes segments included), in pure Java over {@link java.lang.foreign.MemorySegment}s with no
 * native calls.
 *
 * <p>Everything in guest memory is untrusted and may change while it is read (another vCPU writes it): every field
 * is read once into a local, bounds-checked, and every access goes through a region's mapping segment, so a bad
 * index throws instead of touching memory outside the guest regions. All guest structures are little endian
 * (VIRTIO_F_VERSION_1).
 *
 * <p>Normative references: virtio 1.2 §2.7 (split virtqueues, §2.7.5 indirect descriptors, §2.7.7 / §2.7.10
 * notification suppression with event indexes), §2.8 (packed virtqueues) and §5.2 (block device). The validation rules follow QEMU's
 * {@code hw/virtio/virtio.c} and libvhost-user's {@code vu_queue_pop}; where this package differs it says so in
 * {@code spec/split-virtqueue.md} and {@code spec/packed-virtqueue.md}.
 */
package io.vhostd.vhost.virtio;
