/**
 * The master's YAML configuration: {@link io.vhostd.master.config.VhostdConfig} and its parts, read and validated by
 * {@link io.vhostd.master.config.VhostdConfig#load}. Every problem is a {@link
 * io.vhostd.master.config.ConfigException} whose message starts with the key path ({@code controllers[0].bdev: no bdev
 * named 'disk9'}).
 *
 * <p>Role: master. The records hold resolved values (defaults applied, relative sockets resolved against {@code
 * run_dir}, an existing file's size filled in), so their users need no further checks.
 */
package io.vhostd.master.config;
