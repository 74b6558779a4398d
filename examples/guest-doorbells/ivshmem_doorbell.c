// SPDX-License-Identifier: GPL-2.0
/*
 * ivshmem_doorbell: guest driver for QEMU's ivshmem-doorbell (PCI 1af4:1110, MSI-X) that hands
 * userspace BAR2 and eventfd-like doorbell fds; the interface is in ivshmem_doorbell.h.
 *
 * Lifetime: the device state is reference counted; every open file and every doorbell fd holds a
 * reference, so fds may outlive the device. remove() frees the IRQs first, then marks the device
 * gone under the mutex (after which no fd touches the registers: they answer -ENODEV), zaps the
 * BAR2 mappings and wakes the sleepers. Known gap: an mmap() that runs while remove() zaps may be
 * linked after the zap and keep pointing at the old BAR2 address (the kernel links the vma after
 * f_op->mmap returns); closing it needs fault-time insertion with a cacheable memtype.
 */
#include <linux/anon_inodes.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ivshmem_doorbell.h"

#define IVDB_REG_IVPOSITION 8
#define IVDB_REG_DOORBELL 12

struct ivdb_vector {
        atomic64_t count; /* interrupts since probe */
        wait_queue_head_t wq;
};

struct ivdb {
        struct kref ref;
        struct mutex lock;    /* gone, files, register access from process context */
        bool gone;
        struct list_head files; /* struct ivdb_file: whose mappings remove() zaps */
        struct pci_dev *pdev;
        void __iomem *regs;
        resource_size_t shm_start, shm_size;
        unsigned int nvec;
        struct ivdb_vector *vec;
        int index;
        char name[32];
        struct miscdevice misc;
};

struct ivdb_file {
        struct list_head node;
        struct ivdb *dev;
        struct file *file;
};

struct ivdb_waiter {
        struct ivdb *dev;
        struct ivdb_vector *vec;
        atomic64_t seen;
};

struct ivdb_ringer {
        struct ivdb *dev;
        u32 value;
};

static DEFINE_IDA(ivdb_ida);

static void ivdb_release_ref(struct kref *ref) {
        struct ivdb *dev = container_of(ref, struct ivdb, ref);

        ida_free(&ivdb_ida, dev->index);
        kfree(dev->vec);
        kfree(dev);
}

static void ivdb_put(struct ivdb *dev) {
        kref_put(&dev->ref, ivdb_release_ref);
}

/* Takes a reference for a new fd unless the device is gone. */
static int ivdb_get_live(struct ivdb *dev) {
        int r = 0;

        mutex_lock(&dev->lock);
        if (dev->gone)
                r = -ENODEV;
        else
                kref_get(&dev->ref);
        mutex_unlock(&dev->lock);
        return r;
}

static irqreturn_t ivdb_irq(int irq, void *data) {
        struct ivdb_vector *v = data;

        atomic64_inc(&v->count);
        wake_up_interruptible(&v->wq);
        return IRQ_HANDLED;
}

/* ---- wait fds */

static bool ivdb_waiter_ready(struct ivdb_waiter *w) {
        return atomic64_read(&w->vec->count) != atomic64_read(&w->seen) || READ_ONCE(w->dev->gone);
}

static ssize_t ivdb_wait_read(struct file *file, char __user *buf, size_t len, loff_t *pos) {
        struct ivdb_waiter *w = file->private_data;
        u64 now, n;
        int r;

        if (len < sizeof(u64))
                return -EINVAL;
        for (;;) {
                if (READ_ONCE(w->dev->gone))
                        return -ENODEV;
                now = atomic64_read(&w->vec->count);
                n = now - atomic64_xchg(&w->seen, now);
                if (n > 0)
                        break;
                if (file->f_flags & O_NONBLOCK)
                        return -EAGAIN;
                r = wait_event_interruptible(w->vec->wq, ivdb_waiter_ready(w));
                if (r < 0)
                        return r;
        }
        if (copy_to_user(buf, &n, sizeof(n)))
                return -EFAULT;
        return sizeof(n);
}

static __poll_t ivdb_wait_poll(struct file *file, poll_table *pt) {
        struct ivdb_waiter *w = file->private_data;

        poll_wait(file, &w->vec->wq, pt);
        if (READ_ONCE(w->dev->gone))
                return EPOLLERR | EPOLLHUP;
        return atomic64_read(&w->vec->count) != atomic64_read(&w->seen) ? EPOLLIN | EPOLLRDNORM : 0;
}

static int ivdb_wait_release(struct inode *inode, struct file *file) {
        struct ivdb_waiter *w = file->private_data;

        ivdb_put(w->dev);
        kfree(w);
        return 0;
}

static const struct file_operations ivdb_wait_fops = {
        .owner = THIS_MODULE,
        .read = ivdb_wait_read,
        .poll = ivdb_wait_poll,
        .release = ivdb_wait_release,
        .llseek = noop_llseek,
};

/* ---- ring fds */

static ssize_t ivdb_ring_write(struct file *file, const char __user *buf, size_t len, loff_t *pos) {
        struct ivdb_ringer *rg = file->private_data;
        struct ivdb *dev = rg->dev;
        ssize_t r = sizeof(u64);

        if (len < sizeof(u64))
                return -EINVAL;
        mutex_lock(&dev->lock);
        if (dev->gone)
                r = -ENODEV;
        else
                writel(rg->value, dev->regs + IVDB_REG_DOORBELL);
        mutex_unlock(&dev->lock);
        return r;
}

static __poll_t ivdb_ring_poll(struct file *file, poll_table *pt) {
        struct ivdb_ringer *rg = file->private_data;

        return READ_ONCE(rg->dev->gone) ? EPOLLERR | EPOLLHUP : EPOLLOUT | EPOLLWRNORM;
}

static int ivdb_ring_release(struct inode *inode, struct file *file) {
        struct ivdb_ringer *rg = file->private_data;

        ivdb_put(rg->dev);
        kfree(rg);
        return 0;
}

static const struct file_operations ivdb_ring_fops = {
        .owner = THIS_MODULE,
        .write = ivdb_ring_write,
        .poll = ivdb_ring_poll,
        .release = ivdb_ring_release,
        .llseek = noop_llseek,
};

/* ---- the char device */

static long ivdb_new_wait_fd(struct ivdb *dev, u32 __user *arg) {
        struct ivdb_waiter *w;
        u32 vector;
        int fd;

        if (get_user(vector, arg))
                return -EFAULT;
        if (vector >= dev->nvec)
                return -EINVAL;
        w = kzalloc(sizeof(*w), GFP_KERNEL);
        if (!w)
                return -ENOMEM;
        if (ivdb_get_live(dev) < 0) {
                kfree(w);
                return -ENODEV;
        }
        w->dev = dev;
        w->vec = &dev->vec[vector];
        atomic64_set(&w->seen, atomic64_read(&w->vec->count));
        fd = anon_inode_getfd("ivshmem-doorbell-wait", &ivdb_wait_fops, w, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                ivdb_put(dev);
                kfree(w);
        }
        return fd;
}

static long ivdb_new_ring_fd(struct ivdb *dev, struct ivdb_ring __user *arg) {
        struct ivdb_ringer *rg;
        struct ivdb_ring req;
        int fd;

        if (copy_from_user(&req, arg, sizeof(req)))
                return -EFAULT;
        /* The peer's vector count is not known here: QEMU drops doorbells to absent vectors. */
        if (req.reserved != 0)
                return -EINVAL;
        rg = kzalloc(sizeof(*rg), GFP_KERNEL);
        if (!rg)
                return -ENOMEM;
        if (ivdb_get_live(dev) < 0) {
                kfree(rg);
                return -ENODEV;
        }
        rg->dev = dev;
        rg->value = ((u32) req.peer << 16) | req.vector;
        fd = anon_inode_getfd("ivshmem-doorbell-ring", &ivdb_ring_fops, rg, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                ivdb_put(dev);
                kfree(rg);
        }
        return fd;
}

static long ivdb_ioctl(struct file *file, unsigned int cmd, unsigned long arg) {
        struct ivdb *dev = ((struct ivdb_file *) file->private_data)->dev;
        struct ivdb_info info = {};
        bool gone;

        switch (cmd) {
        case IVDB_INFO:
                mutex_lock(&dev->lock);
                gone = dev->gone;
                if (!gone)
                        info.ivposition = readl(dev->regs + IVDB_REG_IVPOSITION);
                mutex_unlock(&dev->lock);
                if (gone)
                        return -ENODEV;
                info.vectors = dev->nvec;
                info.shm_size = dev->shm_size;
                return copy_to_user((void __user *) arg, &info, sizeof(info)) ? -EFAULT : 0;
        case IVDB_WAIT_FD:
                return ivdb_new_wait_fd(dev, (u32 __user *) arg);
        case IVDB_RING_FD:
                return ivdb_new_ring_fd(dev, (struct ivdb_ring __user *) arg);
        default:
                return -ENOTTY;
        }
}

/* Mappings are zapped at remove(); a later touch must not fall back to anonymous memory. */
static vm_fault_t ivdb_vm_fault(struct vm_fault *vmf) {
        return VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct ivdb_vm_ops = {
        .fault = ivdb_vm_fault,
};

static int ivdb_mmap(struct file *file, struct vm_area_struct *vma) {
        struct ivdb *dev = ((struct ivdb_file *) file->private_data)->dev;
        int r;

        mutex_lock(&dev->lock);
        if (dev->gone) {
                r = -ENODEV;
        } else {
                /* Default page protection: cacheable, as UIO_MEM_IOVA maps it. */
                vma->vm_ops = &ivdb_vm_ops;
                r = vm_iomap_memory(vma, dev->shm_start, dev->shm_size);
        }
        mutex_unlock(&dev->lock);
        return r;
}

static int ivdb_open(struct inode *inode, struct file *file) {
        struct ivdb *dev = container_of(file->private_data, struct ivdb, misc);
        struct ivdb_file *f;

        f = kzalloc(sizeof(*f), GFP_KERNEL);
        if (!f)
                return -ENOMEM;
        if (ivdb_get_live(dev) < 0) {
                kfree(f);
                return -ENODEV;
        }
        f->dev = dev;
        f->file = file;
        mutex_lock(&dev->lock);
        list_add(&f->node, &dev->files);
        mutex_unlock(&dev->lock);
        file->private_data = f;
        return 0;
}

static int ivdb_release(struct inode *inode, struct file *file) {
        struct ivdb_file *f = file->private_data;
        struct ivdb *dev = f->dev;

        mutex_lock(&dev->lock);
        list_del(&f->node);
        mutex_unlock(&dev->lock);
        kfree(f);
        ivdb_put(dev);
        return 0;
}

static const struct file_operations ivdb_fops = {
        .owner = THIS_MODULE,
        .open = ivdb_open,
        .release = ivdb_release,
        .mmap = ivdb_mmap,
        .unlocked_ioctl = ivdb_ioctl,
        .compat_ioctl = compat_ptr_ioctl,
        .llseek = noop_llseek,
};

/* ---- PCI */

static void ivdb_free_irqs(struct ivdb *dev, unsigned int n) {
        while (n-- > 0)
                free_irq(pci_irq_vector(dev->pdev, n), &dev->vec[n]);
        pci_free_irq_vectors(dev->pdev);
}

static int ivdb_setup_irqs(struct ivdb *dev) {
        unsigned int i;
        int r;

        dev->nvec = pci_msix_vec_count(dev->pdev);
        dev->vec = kcalloc(dev->nvec, sizeof(*dev->vec), GFP_KERNEL);
        if (!dev->vec)
                return -ENOMEM;
        for (i = 0; i < dev->nvec; i++) {
                atomic64_set(&dev->vec[i].count, 0);
                init_waitqueue_head(&dev->vec[i].wq);
        }
        r = pci_alloc_irq_vectors(dev->pdev, dev->nvec, dev->nvec, PCI_IRQ_MSIX);
        if (r < 0)
                return r;
        for (i = 0; i < dev->nvec; i++) {
                r = request_irq(pci_irq_vector(dev->pdev, i), ivdb_irq, 0, dev->name, &dev->vec[i]);
                if (r < 0) {
                        ivdb_free_irqs(dev, i);
                        return r;
                }
        }
        /* MSI-X messages are DMA writes of the device: without bus mastering they are lost. */
        pci_set_master(dev->pdev);
        return 0;
}

static int ivdb_probe(struct pci_dev *pdev, const struct pci_device_id *id) {
        struct ivdb *dev;
        int r;

        /* ivshmem-plain has the same ids and no MSI-X: leave it to others (e.g. sysfs resource2). */
        if (pci_msix_vec_count(pdev) <= 0)
                return -ENODEV;
        dev = kzalloc(sizeof(*dev), GFP_KERNEL);
        if (!dev)
                return -ENOMEM;
        kref_init(&dev->ref);
        mutex_init(&dev->lock);
        INIT_LIST_HEAD(&dev->files);
        dev->pdev = pdev;
        dev->index = ida_alloc(&ivdb_ida, GFP_KERNEL);
        if (dev->index < 0) {
                kfree(dev);
                return -ENOMEM;
        }
        snprintf(dev->name, sizeof(dev->name), "ivshmem-doorbell%d", dev->index);

        r = pcim_enable_device(pdev);
        if (r < 0)
                goto fail;
        r = pcim_iomap_regions(pdev, BIT(0) | BIT(2), dev->name);
        if (r < 0)
                goto fail;
        dev->regs = pcim_iomap_table(pdev)[0];
        dev->shm_start = pci_resource_start(pdev, 2);
        dev->shm_size = pci_resource_len(pdev, 2);
        r = ivdb_setup_irqs(dev);
        if (r < 0)
                goto fail;

        dev->misc = (struct miscdevice) {
                .minor = MISC_DYNAMIC_MINOR,
                .name = dev->name,
                .fops = &ivdb_fops,
                .parent = &pdev->dev,
                .mode = 0600,
        };
        r = misc_register(&dev->misc);
        if (r < 0) {
                ivdb_free_irqs(dev, dev->nvec);
                goto fail;
        }
        pci_set_drvdata(pdev, dev);
        dev_info(&pdev->dev, "%s: id %u, %u vectors, %llu bytes shared\n", dev->name,
                 readl(dev->regs + IVDB_REG_IVPOSITION), dev->nvec, (unsigned long long) dev->shm_size);
        return 0;
fail:
        ivdb_put(dev);
        return r;
}

static void ivdb_remove(struct pci_dev *pdev) {
        struct ivdb *dev = pci_get_drvdata(pdev);
        struct ivdb_file *f;
        unsigned int i;

        ivdb_free_irqs(dev, dev->nvec);
        misc_deregister(&dev->misc);
        mutex_lock(&dev->lock);
        WRITE_ONCE(dev->gone, true);
        list_for_each_entry(f, &dev->files, node)
                unmap_mapping_range(f->file->f_mapping, 0, 0, 1);
        mutex_unlock(&dev->lock);
        for (i = 0; i < dev->nvec; i++)
                wake_up_interruptible_all(&dev->vec[i].wq);
        ivdb_put(dev);
}

static const struct pci_device_id ivdb_ids[] = {
        { PCI_DEVICE(0x1af4, 0x1110) },
        {},
};
MODULE_DEVICE_TABLE(pci, ivdb_ids);

static struct pci_driver ivdb_driver = {
        .name = "ivshmem_doorbell",
        .id_table = ivdb_ids,
        .probe = ivdb_probe,
        .remove = ivdb_remove,
};
module_pci_driver(ivdb_driver);

MODULE_DESCRIPTION("ivshmem-doorbell: BAR2 and eventfd-like doorbell fds for userspace");
MODULE_LICENSE("GPL");
