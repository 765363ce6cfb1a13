/**
 * SMART / health information (issue #5): decoders of the NVMe SMART / Health Information log page ({@link
 * io.vhostd.master.health.SmartHealthLog}) and of Identify Controller ({@link
 * io.vhostd.master.health.IdentifyController}), and the {@code bdev_nvme_get_controller_health_info} RPC ({@link
 * io.vhostd.master.health.HealthService}), which reads NVMe controllers through the kernel's admin pass-through and
 * derives what it honestly can for other bdevs. Role: master.
 */
package io.vhostd.master.health;
