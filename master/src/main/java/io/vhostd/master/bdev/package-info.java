/**
 * Bdevs: the devices the master serves from (DESIGN §9 "bdev"): {@code file} and {@code block} ({@link
 * io.vhostd.master.bdev.FileBdevs}), {@code null} and {@code malloc} ({@link io.vhostd.master.bdev.MemoryBdevs}), and
 * the namespaces of kernel NVMe controllers found by {@link io.vhostd.master.bdev.NvmeProbe}. Role: master.
 */
package io.vhostd.master.bdev;
