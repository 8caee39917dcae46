# expect: add_microvm_test\(t\): ENGINE "firecracker" is not supported: use auto, kvm or qemu
add_microvm_test(NAME t COMMAND /bin/true ENGINE firecracker)
