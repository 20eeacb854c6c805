# Deployment: `chalice package` -> Terraform stack (infra/README.md).
#   make package [STAGE=prod]   build/stacks/<stage>: transformed chalice.tf.json + infra/*.tf + deployment.zip
#   make migrate-stack          move a build/stack packaged before per-stage folders to build/stacks/<env>
#   make deploy-local           rehearse build/stacks/<stage> against moto: apply, verify, no-change plan, destroy
#   make destroy                remove the bucket notification, empty the bucket (all versions), terraform destroy
#   make replay-failed          re-invoke the S3 events in the failed-events queue (DRY_RUN=1: list only)
#   make test-infra             only the infra checks (also part of `make test`)
STAGE ?= dev
BUILD ?= build
# One folder (state, tfvars) per stage: switching STAGE never touches another stage's.
STACK = $(BUILD)/stacks/$(STAGE)
# Offline provider mirror; used only when the directory exists (infra/tfcli.py).
TF_PLUGIN_MIRROR ?= /opt/tf-plugins
export TF_PLUGIN_MIRROR
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
# Points terraform at $(BUILD)/terraformrc when the mirror exists; empty otherwise.
TF_ENV = $(if $(TF_RC),TF_CLI_CONFIG_FILE=$(TF_RC))
TF_RC = $(shell $(PY) -m infra.tfcli $(BUILD))

.PHONY: package migrate-stack deploy-local destroy replay-failed test-infra infra-venv infra-init infra-clean

## create .venv-infra (checkov) for the infra checks
infra-venv: $(INFRA_STAMP)

$(INFRA_STAMP): infra/requirements-infra.txt
	@test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install -q -r infra/requirements-infra.txt
	@touch $@

# `make test` runs tests/infra, whose scan needs checkov.
test: $(INFRA_STAMP)

## `chalice package` + the infra overlay into build/stacks/$(STAGE) (STAGE=dev|prod)
package: $(STAMP)
	$(PY) -m infra.stack --stage $(STAGE) --build-dir $(BUILD)

## move build/stack (packaged before per-stage folders; state included) to build/stacks/<its environment>
migrate-stack: $(STAMP)
	$(PY) -m infra.stack --migrate --build-dir $(BUILD)

## rehearse build/stacks/$(STAGE) against moto: apply, verify, no-change plan, destroy
deploy-local: package
	$(PY) -m infra.local.rehearsal --stack $(STACK) --work-dir $(BUILD)/rehearsal

## terraform init build/stacks/$(STAGE) (from the local provider mirror when there is one)
infra-init: $(STAMP)
	@test -f $(STACK)/chalice.tf.json || { echo "run 'make package' first"; exit 1; }
	cd $(STACK) && $(TF_ENV) terraform init -input=false

# force_destroy is off by default, so the bucket is emptied first; see
# infra/README.md ("Cleanup") for ENIs that Lambda releases late.
## remove the bucket notification, empty the bucket, then terraform destroy build/stacks/$(STAGE)
destroy: infra-init
	$(PY) -m infra.empty_bucket --stack $(STACK)
	cd $(STACK) && $(TF_ENV) terraform destroy -input=false

## re-invoke failed S3 events from the failure queue (DRY_RUN=1 only lists them)
replay-failed: infra-init
	$(PY) -m infra.replay_failed_events --stack $(STACK) $(if $(DRY_RUN),--dry-run)

## only the infra checks (also part of `make test`)
test-infra: $(STAMP) $(INFRA_STAMP)
	$(PY) -m pytest tests/infra

# `make clean` also drops the checkov venv.
clean: infra-clean
## remove .venv-infra (also done by `make clean`)
infra-clean:
	rm -rf $(INFRA_VENV)
