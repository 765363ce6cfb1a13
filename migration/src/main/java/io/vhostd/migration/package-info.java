/**
 * Volume migration (DESIGN §5): the secondary process that copies a volume to another host by pre-copy rounds over
 * the dirty-block map while the VM live-migrates. Not part of the walking skeleton; arrives with its own issue.
 *
 * <p>Role: migration.
 */
package io.vhostd.migration;
