// <linux/kvm.h> as C++ needs it. Include this instead of <linux/kvm.h>, before it.
//
// Linux 6.1's uapi headers (Debian 12) declare flexible arrays with
// __DECLARE_FLEX_ARRAY, an anonymous struct holding an empty struct. An empty
// struct is 0 bytes in C and 1 in C++, so in C++ struct kvm_msrs, kvm_cpuid2,
// kvm_msr_list and kvm_xsave grow by 4-8 bytes: their arrays sit at the wrong
// offset, and the ioctl numbers (which encode sizeof) no longer match the
// kernel's — KVM_GET_MSRS, KVM_SET_CPUID2, KVM_GET_XSAVE... all fail with EINVAL.
// (Fixed upstream in Linux 6.3.) Here the macro becomes a plain flexible array.
#pragma once
// Flexible array members are a GNU extension in C++; the kernel ABI needs them.
#pragma GCC system_header

#ifdef _LINUX_KVM_H
#error "<linux/kvm.h> was included before vmm/kvm/linux_kvm.h: include only vmm/kvm/linux_kvm.h"
#endif

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[]

#include <linux/kvm.h>

// The layouts the kernel uses (x86-64), so a wrong one cannot compile.
static_assert(sizeof(kvm_msrs) == 8);
static_assert(sizeof(kvm_msr_list) == 4);
static_assert(sizeof(kvm_cpuid2) == 8);
static_assert(sizeof(kvm_xsave) == 4096);
static_assert(sizeof(kvm_irq_routing) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40);
static_assert(sizeof(kvm_msr_entry) == 16);
