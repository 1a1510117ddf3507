# The paper's encoder is pre-trained on ImageNet: torchvision's ResNeXt-50 32x4d weights, fetched
# once into weights.folder and verified against the SHA-256 prefix in their file name. This is the
# workflow's only network access (opt-out: weights.download: false). A local rule, so that on a
# cluster it runs on the submit host, which has network access when compute nodes do not; its high
# priority makes it the first job of a run, so a machine without network stops before any other
# work. train_model jobs of resnext_unet need the file only with encoder_weights: imagenet.


rule fetch_encoder_weights:
    output:
        ENCODER_WEIGHTS_FILE,
    log:
        "logs/weights/fetch_encoder_weights.log",
    priority: 100
    localrule: True
    params:
        url=config["weights"]["url"],
        download=config["weights"]["download"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/fetch_encoder_weights.py"
