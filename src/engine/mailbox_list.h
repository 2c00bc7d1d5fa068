/* mailbox_list.h - read a server's folder tree into a folder_list.
 *
 * The one place that turns IMAP's NAMESPACE and LIST answers into what
 * folder_map plans with: the personal namespace's prefix and delimiter,
 * every folder's UTF-8 name and its attributes (special-use, \Noselect,
 * \NonExistent, \Subscribed).  Used by sync and verify alike.
 */
#ifndef IMAPMIG_ENGINE_MAILBOX_LIST_H
#define IMAPMIG_ENGINE_MAILBOX_LIST_H

#include "engine/folder_map.h"
#include "imap/imap_client.h"

/* Fill l (initialised here; release with folder_list_release()). */
int mailbox_list_read(struct imap_client *c, struct folder_list *l, struct err *err);

#endif
